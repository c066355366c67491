(fwrite 12 "x")
