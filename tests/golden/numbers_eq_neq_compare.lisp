(println (eq 'a 'a) (eq 'a 'b) (eq 1 1.0) (eq "x" "x") (eq '(1 2) '(1 2)) (eq 1 1 1) (eq nil false) (eq 1 true))
(println (neq 'a 'b) (neq 1 1) (neq 1 2 3) (neq 1 2 1))
(println (>=< 1 2) (>=< 2 2) (>=< 3 2) (>=< "b" "a") (>=< 1.5 1))
