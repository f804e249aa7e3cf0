"""EMR launch: how an EMR opens consultcam for the patient on its screen and signs the clinician in.

The Medtech ALEX Apps launch (`GET /launch/medtech?context=&signature=`, docs/medtech.md): the context is
decoded only by ALEX, the patient is read from ALEX, the GP is signed in for that provider and facility, and
the patient's capture session opens or resumes. SMART App Launch is issue 13.

- `endpoints`: the route and its pages (`web/templates/launch.html`);
- `medtech`: the rules (age, replay, encounter key, session, audit), no web framework;
- `repository`: the SQL of used launch contexts;
- `port`: what the rules ask of ALEX; `alex_api`: the adapter that asks it (on the runtime as
  `medtech_launch`, built only for an `alex+https://` EMR URL).
"""
