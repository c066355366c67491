(setq l '(1 2 3))
(println (@ l 2))
(@ l 3)
