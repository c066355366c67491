(irange 0 1)
