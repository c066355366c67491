; An unbound variable: did-you-mean over the visible variables (parameters, let, globals) and
; builtins; the caret points at the atom itself, not at the form around it.
(setq counter 10)
(defun scale (factor values)
   (let ((total 0))
      (loop v values
         (+= total (* v factor)))
      (list totl facter)))
(println (catch (scale 2 '(1 2))))
(println (catch (+ countr 1)))
(println (catch (println lenght)))
(println (catch (+ 1 zzqx)))
(defun area (width height)
   (* width
      heigth))
(area 2 3)
