(println (size "héllo") (in "hello" "ll") (count "aaa" "a") (@ "abc" 0) (@@ "abc" 1) (reverse "été") (last "xy"))
