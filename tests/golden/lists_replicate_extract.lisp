(println (replicate 3 "a") (replicate 2 '(1)) (replicate 0 1))
(println (extract '(1 2 3 4 5) 1 3) (@@ '(1 2 3 4 5) 2) (@@ "abcdef" 1 3) (@@ "abcdef" -2))
(println (@@ "key=value;" "=" ";") (@@ "a[b]c" "[" "]") (@@ "abc" 2 1))
