(integers (1 2) (3))
