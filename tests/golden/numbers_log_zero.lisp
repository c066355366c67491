(println (log 1))
(log 0)
