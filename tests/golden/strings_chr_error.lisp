(chr "A")
