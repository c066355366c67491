(println (integers 15339 1332) (type (integers 1 2)) (integers '(1 3 4 5)) (integers) (integers "7" 2.9))
(println (integers (10 20) (30 40)) (size (integers (10 20) (30 40))) (type (@ (integers (1 2) (3 4)) 0)))
(println (integers '((1 2) (3 4))) (flatten (integers (1 2) (3 4))))
