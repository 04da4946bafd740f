# seeded_hash(s): a seeded integer hash of the string s, as 10 zero-padded
# digits that sort like the numbers. Lehmer / Park-Miller steps modulo 2^31-1
# are exact in double precision, so mawk and gawk give the same values on every
# machine. make_corpus.sh and make_family_sample.sh prepend this file to their
# awk programs to order records reproducibly.
BEGIN {
  SEEDED_HASH_M = 2147483647; SEEDED_HASH_A = 48271
  chars = " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~"
  for (i = 1; i <= length(chars); i++) seeded_hash_code[substr(chars, i, 1)] = i + 31
}
function seeded_hash(s,   i, x) {
  x = 1
  for (i = 1; i <= length(s); i++) x = (x * SEEDED_HASH_A + seeded_hash_code[substr(s, i, 1)]) % SEEDED_HASH_M
  for (i = 0; i < 4; i++) x = (x * SEEDED_HASH_A) % SEEDED_HASH_M
  return sprintf("%010d", x)
}
