(floats (1 2) 3)
