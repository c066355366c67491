; (loopcount n var body...) counts from 0 to n-1; (loopcount n into var ...) is the same
(loopcount 3 i (print i " "))
(println)
(loopcount 3 into j (print j " "))
(println)
; a negative count runs |n| times counting down to 0
(loopcount -4 k (print k " "))
(println)
(loopcount -2 into k (print k " "))
(println)
; without a variable, the body just runs n times
(setq n 0)
(loopcount 5 (+= n 1))
(println n)
; zero runs nothing and gives nil
(println (loopcount 0 z (println "never")))
; the value is the body's last value; break gives nil
(println (loopcount 3 i (* i 10)))
(println (loopcount 10 i (if (= i 2) (break)) i))
; a float count is truncated
(loopcount 2.9 i (print i " "))
(println)
; inside a function the counter is a local
(defun squares (n) (setq out ()) (loopcount n into i (push out (* i i))) out)
(println (squares 4))
(println i)
