; class@: fields with defaults, methods that see the fields, setqi, method calls on an instance
(class@ Counter (start (step 1))
   (defun next () (setqi start (+ start step)) start)
   (defun jump (n) (setqi start (+ start (* n step))) (next))
   (defun tag (name) (setqi label name) label))
(setq k (Counter 10))
(println k (type k))
(println (k (next)))
(println (k (next) (next)))
(println (k (jump 3)))
(setq k2 (Counter 0 5))
(println (k2 (next)) (k (next)))
(println (k2 (tag "five")))
(println k2)
; the instance may come from any expression
(println ((Counter 100 10) (next) (jump 2)))
; an explicit class name after the instance is checked
(println (k Counter (next)))
; calls that look like methods on something else stay ordinary calls
(defun next () 'plain)
(defun wrap (x) (list 'wrapped x))
(println (wrap (next)))
; errors
(println (catch (Counter)))
(println (catch (Counter 1 2 3)))
(k (tag))
