; LispE spells lambda three ways: lambda, λ and \ (a backslash standing alone)
(println ((\ (x y) (+ x y)) 10 20))
(println (map (\(x) (* x 2)) '(1 2 3)))
(println ((λ(x) (* x x)) 7))
(println (filter (λ (x) (> x 2)) '(1 2 3 4)))
; a \ lambda is a closure like any other
(defun adder (n) (\ (x) (+ x n)))
(setq add5 (adder 5))
(println (add5 10) (type add5))
; the body may have several forms; the last one gives the value
(println ((\ (s) (setq s (+ s "!")) (upper s)) "hi"))
; \ with no parameters
(println ((\ () "none")))
; in a quoted list, \ is just an atom
(println '(\ x) (type (car '(\ x))))
