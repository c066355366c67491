(println {"a":1 "b"})
