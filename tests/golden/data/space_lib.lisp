; loaded into a space by lispe_syntax_spaces.lisp: these functions land in that space
(defun calculus (x y) (- x y))
(defun twice_calculus (x y) (* 2 (calculus x y)))
(setq space_lib_loaded true)
"space_lib done"
