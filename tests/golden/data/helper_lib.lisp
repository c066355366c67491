; used by core_load_file.lisp
(defun helper_double (x) (* 2 x))
(setq helper_loaded 'yes)
'loaded
