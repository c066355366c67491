(setq i (integers 3 1 2))
(println (type (cdr i)) (type (reverse i)) (type (filter '(> 2) i)) (type (cons 0 i)) (type (cons "a" i)))
(println (type (map '(* 2) i)) (type (map 'string i)) (type (list 1 2)))
