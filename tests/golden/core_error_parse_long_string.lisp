(println 1)
(setq s """never closed
(println 2)
