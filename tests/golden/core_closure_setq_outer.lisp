; a setq inside a lambda updates a binding of the enclosing frame
(defun total (lst)
   (setq acc 0)
   (map (lambda (x) (setq acc (+ acc x))) lst)
   acc)
(println (total '(1 2 3 4)))

; at top level, a lambda's setq of an existing global updates it
(setq seen 0)
(map (lambda (x) (setq seen (+ seen 1))) '(a b c))
(println seen)

; but a fresh name stays local to the lambda
((lambda (x) (setq fresh_local x)) 3)
(println (maybe fresh_local "unbound"))
