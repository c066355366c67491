(println (sum '(1 2 3)) (sum '(1 2.5)) (sum ()) (sum 1 2 3))
(println (product '(2 3 4)) (product ()) (product 2 0.5))
(println (max 3 9 2) (max '(3 9 2)) (min 3 9 2) (min '(1.5 -2)) (max "pear" "apple") (min 1 2.5))
