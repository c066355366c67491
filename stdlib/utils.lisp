; utils: small helpers written in LispE, loaded with (use 'utils)
;
; Configuration lists in the style of the generation guide are lists of (key value) pairs:
;   (setq config (("max_length" 50) ("temperature" 0.8)))
;   (assoc_get "temperature" config)        -> 0.8
;   (pairs_to_dict config)                  -> {"max_length":50 "temperature":0.8}

; the value paired with key in a list of (key value) pairs, else default
(defun assoc_get (key pairs (default nil))
   (setq found default)
   (loop p pairs
      (if (= (car p) key)
          (block (setq found (cadr p)) (break))))
   found)

; a copy of pairs where key is bound to value (replaced if present, appended if not)
(defun assoc_set (key value pairs)
   (setq out (list))
   (setq replaced nil)
   (loop p pairs
      (if (= (car p) key)
          (block (push out (list key value)) (setq replaced true))
          (push out p)))
   (if (not replaced) (push out (list key value)))
   out)

; a dictionary built from (key value) pairs; later pairs win
(defun pairs_to_dict (pairs)
   (setq d {})
   (loop p pairs (set@ d (car p) (cadr p)))
   d)

; the first n elements of lst
(defun take (n lst)
   (setq out (list))
   (loop x lst
      (if (>= (size out) n) (break))
      (push out x))
   out)

; lst without its first n elements
(defun drop (n lst)
   (setq out (list))
   (setq i 0)
   (loop x lst
      (if (>= i n) (push out x))
      (+= i 1))
   out)

; x limited to the interval [lo, hi]
(defun clamp (x lo hi) (max lo (min x hi)))

; arithmetic mean of a non-empty list of numbers
(defun mean (lst)
   (if (= (size lst) 0)
       (throw "mean: empty list")
       (/ (float (sum lst)) (size lst))))

; the function x -> (f (g x))
(defun compose (f g) (lambda (x) (f (g x))))

; s repeated n times
(defun repeat_string (s n)
   (setq out "")
   (loopcount n (+= out s))
   out)

; the list of (index element) pairs of lst
(defun enumerate (lst)
   (setq out (list))
   (setq i 0)
   (loop x lst (push out (list i x)) (+= i 1))
   out)
