(setq x '(1 2))
(println (+ 1 "a"))
