(println (size (range 0 1000000 1)))
(println (maybe (iota 100000000000) "iota refused"))
(println (maybe (replicate 30000000 0) "replicate refused"))
(range 0 1e12 1)
