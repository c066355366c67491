(println (lowerp "abc") (lowerp "aBc") (upperp "ABC") (upperp "1") (alphap "abé") (alphap "a1"))
(println (digitp "123") (digitp "12a") (digitp "") (punctuationp "?!") (punctuationp "a!"))
(println (lower? "a") (upper? "A") (alpha? "a") (digit? "1") (punctuation? "."))
