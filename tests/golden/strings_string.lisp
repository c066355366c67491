(println (string 42) (string 1.5) (string '(1 "a")) (string "x") (string nil) (size (string 123)))
