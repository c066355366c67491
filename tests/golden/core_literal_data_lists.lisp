; decision: a list whose head is a number or string is data
(setq config (
    ("max_length" 50)           ; Maximum generation length
    ("temperature" 0.8)         ; Sampling temperature
    ("do_sample" true)))
(println config)
(println (size config) (car config))
(setq pairs ((1 2) (3 4)))
(println pairs)
(println (1 2 (+ 1 2)))
(println ("a" "b"))
(setq x 10)
(println (("x" x) ("double" (* 2 x))))
