(setq a 1)
(println a)
(println (+ a
   undefined_thing))
