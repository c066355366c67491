(println (^^ 2 64) (^^ 2 0.5) (type (^^ 10 20)) (abs -0.0) (floor -0.5) (ceil -0.5) (round 0.5))
(println (eq 1 1.0) (>=< 2 2.0) (integer 1e3) (float "1e-3"))
(^^ 2 100000000)
