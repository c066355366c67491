; A config function (callback, stop_when, on_step, logits_processor) whose parameters do not fit
; what generation passes is refused when the config is set, naming the key and the signature it needs;
; an error inside one names the key and the signature, at the failing form inside the function.
(use 'lispe_torch)
(setq model (torch_model_create "transformer" {"vocab_size":64 "hidden_size":16 "num_layers":1 "num_heads":2 "seed":1}))
(defun try (config)
   (catch (torch_generator_config (torch_generator_create model "cpu") config)))
(println (try {"callback":(lambda (id) id)}))
(println (try {"stop_when":(lambda (text row) text)}))
(println (try {"on_step":(lambda (step) nil)}))
(println (try {"logits_processor":(list (lambda (ids scores) scores) (lambda (scores) scores))}))
(defun show (id piece extra) (print id))
(println (try {"callback":show}))
(println (try {"callback":'show}))
(println (try {"on_step":42}))
(defun take-all ($ args) nil)
(println "accepted:" (type (try {"callback":take-all "on_step":(lambda (step params (more 1)) nil)})))
(setq generator (torch_generator_create model "cpu"))
(torch_generator_config generator {"max_length":2 "seed":1
   "logits_processor":(lambda (ids scores) (car ids))})
(println (catch (torch_generate generator (integers 1 2 3))))
(torch_generator_config generator {"logits_processor":nil
   "callback":(lambda (id piece)
                 (println "token" (+ id "?")))})
(torch_generate generator (integers 1 2 3))
