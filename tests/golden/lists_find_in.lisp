(println (find '(1 2 3) 2) (find '(1 2 3) 5) (find "hello" "l") (find "hello" "l" 3) (find "hello" "z"))
(println (find {"a":1 "b":2} 2) (find '("a" (1 2)) '(1 2)))
(println (in '(1 2 3) 2) (in '(1 2 3) 4) (in "hello" "ell") (in "hello" "x") (in {"a":1} "a") (in {"a":1} "b"))
(println (in '(1 2) 1.0) (in (list 'a 'b) 'b))
