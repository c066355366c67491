(println (flatten '(1 (2 (3 4)) (5))) (flatten ()))
(println (unique '(1 2 1 3 2)) (unique '("a" "b" "a")) (unique '((1) (1) (2))))
