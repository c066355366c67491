; extract / @@ on strings and lists, as LispE's String::extraction and List::extraction
(println (extract "abcdefghij" "b" 3) (extract "12345" -2) (@@ "abcdef" 1 3))
(println (@@ "abcdef" 2 0) (@@ "abcdef" 2 -1) (@@ "abcdef" 1 "e"))
(println (@@ "a[b]c" "[" "]") (@@ "a[b]c" + "[" + "]") (@@ "x(a)(b)" - "(" ")"))
(println (size (@@ "abc" 5)) (size (@@ "abc" "z" 1)) (size (@@ "abcdef" 4 2)))
(println (@@ '(1 2 3 4) 1 3) (@@ '(1 2 3 4) -1) (@@ '(1 2 3 4) 7) (@@ '(1 2 3 4) 3 1))
(@@ "abc" + 1)
