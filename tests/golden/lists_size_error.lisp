(size 12)
