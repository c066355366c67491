(println (floats 1 2.5) (type (floats 1)) (type (@ (floats 1 2) 0)) (numbers 1 "2.5") (type (numbers 1)) (type (@ (numbers 1) 0)))
(println (strings "a" "b") (strings 1 'x) (type (strings "a")) (strings '("x" "y")))
(println (floats (1 2) (3 4)) (numbers '(1.5)))
