; setq inside a function binds a local, even when a global of that name exists
(setq counter 100)
(defun bump () (setq counter 1) counter)
(println (bump) counter)

; setg sets the global
(defun bump_global () (setg counter (+ counter 1)))
(bump_global)
(println counter)

; reading a global before the local setq sees the global
(defun shadow () (setq before counter) (setq counter 5) (list before counter))
(println (shadow) counter)
