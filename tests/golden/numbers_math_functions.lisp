(println (abs -3) (abs 2.5) (sqrt 16) (exp 0) (exp 1) (log _e) (log2 8) (log10 1000))
(println (sin 0) (cos 0) (tan 0) (sin (/ _pi 2)) (asin 1) (acos 1) (atan 1))
(println (sinh 0) (cosh 0) (tanh 0) (type (sqrt 16)) (type (abs -3)))
