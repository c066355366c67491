(split 12 ",")
