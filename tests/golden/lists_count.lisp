(println (count '(1 2 1 1) 1) (count "banana" "an") (count '("a" "b") "c") (count '(1 2 1) 1 1))
