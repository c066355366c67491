(println (check (< 1 2) (print "body ") 'done))
(println (check (> 1 2) 'never))
(println (ncheck (> 1 2) 'was_false 'was_true))
(println (ncheck (< 1 2) 'was_false (print "then ") 'was_true))
