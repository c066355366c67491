(println (split "a,b,,c" ",") (split "  one two	three ") (split "abc" "") (split "" ","))
(println (splite "a,b,,c" ",") (type (split "a b")))
