(integers 1 "x")
