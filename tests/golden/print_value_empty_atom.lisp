; print and println give LispE's empty atom, which prints as nothing
(defun say (who) (println "hello" who))
(println "[" (say "you") "]")
(println (size (string (print ""))))
(print (list 1 (print "") 2))
(println)
