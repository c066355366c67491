; tuning_temperature.lisp -- the "Temperature" snippet of docs/guide.md, on SmolLM2-135M-Instruct.
; model: smollm2
;
; The snippet's lines are kept verbatim. Lines after a "; [added]" comment bind what they assume
; (`generator`) and show each preset's answer to the same question. Low temperatures stay close to
; the likeliest answer; high ones wander.

(use 'lispe_torch)

; [added] a generator on the embedded model, a short question, and a fixed seed so a run is repeatable
(setq model (torch_hf_load_model "SmolLM2-135M-Instruct"))
(setq generator (torch_generator_create model "cpu"))
(setq input_tokens (torch_tensor (tokenizer_chat '(("user" "Name a colour and a fruit.")))))
(torch_generator_config generator {"seed":7})
(defun show (name)
    (setq out (torch_generate generator input_tokens "sample"))
    (println name ":" (tokenizer_decode (tensor_slice out 0 (size input_tokens) (size out)))))

; Conservative (factual, focused)
(torch_set_generation_params generator 50 0.3 40 0.9)
(show "temperature 0.3")

; Balanced (natural, coherent)  
(torch_set_generation_params generator 50 0.8 40 0.9)
(show "temperature 0.8")

; Creative (diverse, experimental)
(torch_set_generation_params generator 50 1.2 40 0.9)
(show "temperature 1.2")

; Wild (highly creative, potentially incoherent)
(torch_set_generation_params generator 50 2.0 40 0.9)
(show "temperature 2.0")
