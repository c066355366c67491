(println (join '("a" "b" "c") ",") (join '("a" "b")) (join '(1 2.5 "x") "-") (join () ","))
(println (format "%1 is %2 years old" "Ann" 30))
(println (format "%2%1 %3" "a" "b" '(1 2)) (format "100%") (format "%1 %5" 1))
