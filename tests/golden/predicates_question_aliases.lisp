(println (null? nil) (number? 2) (string? "x") (zero? 0) (empty? ()) (atom? 'x) (cons? '(1)))
(println (integer? 2) (float? 2.5) (list? '(1)) (dictionary? {}) (symbol? 'a) (negative? -1) (positive? 1))
