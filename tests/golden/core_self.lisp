; self is a recursive call to the current function
(defun fact (n) (if (<= n 1) 1 (* n (self (- n 1)))))
(println (fact 10))
(println ((lambda (n) (if (= n 0) 'zero (self (- n 1)))) 5))
(println (map (lambda (n) (if (< n 2) n (+ (self (- n 1)) (self (- n 2))))) '(5 6 7)))
