(println (explode "abc") (atom "xyz") (type (atom "xyz")) (eq (atom "a") 'a))
(println (ord "A") (ord "AB") (ord "") (chr 65) (chr 233) (chr 955))
