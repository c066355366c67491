; An unknown function: the closest user function or builtin is suggested (the same helper as for
; variables and config keys).
(defun fibonacci (n) (if (< n 2) n (+ (fibonacci (- n 1)) (fibonacci (- n 2)))))
(println (catch (fibonaci 10)))
(println (catch (revers '(1 2 3))))
(println (catch (qqqzzz 1)))
(printn "hello")
