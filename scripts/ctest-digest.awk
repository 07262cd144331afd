# What failed, from ctest's Testing/Temporary/LastTest.log (scripts/test.sh prints it at the end of
# a failed run, where CI's shortened log still shows it): for each failed test, its name, then the
# integration runner's own "Failed:" summary (server health problems included), gtest's FAILED
# lines and interop errors from that test's output alone.
/^[0-9]+\/[0-9]+ Testing: / { name = $0; n = 0 }
{ buf[n++] = $0 }
/^Test Failed\./ {
  print "== " name
  p = 0
  for (i = 0; i < n; i++) {
    line = buf[i]
    if (line ~ /^Failed:$/) p = 1
    if (p || line ~ /^\[  FAILED  \]|^not ok |Error: |AssertionError/) print substr(line, 1, 400)
    if (line ~ /^[0-9]+ passed, [0-9]+ failed/) p = 0
  }
}
