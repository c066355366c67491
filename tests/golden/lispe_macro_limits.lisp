; a macro that expands without end stops with an error naming it
(defmacro grow (x) (grow (x x)))
(println (catch (eval '(grow 1))))
(defmacro forever (x) (forever x))
(println (catch (eval '(forever 1))))
; a macro whose expansion doubles at each level: stopped by the expansion budget
(defmacro dup (x) (list x x))
(println (dup (dup 1)))
(println (catch (eval '(dup (dup (dup (dup (dup (dup (dup (dup (dup (dup (dup (dup (dup (dup (dup (dup (dup (dup (dup (dup (dup (dup (dup (dup (dup (dup (dup (dup (dup (dup 1)))))))))))))))))))))))))))))))))
(println "still running")
