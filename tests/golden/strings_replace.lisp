(println (replace "a-b-c" "-" "+") (replace "aaa" "a" "bb") (replace "abc" "x" "y") (replace "n=%" "%" 5))
(println (replace "abcdef" "XY" 1 3) (replace "abcdef" "Z" -2 6))
