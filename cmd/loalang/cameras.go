package main

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/loalang/loalang/web/api"
)

func init() { register(newCameras) }

// cameraFlags are the settable fields of add and set; on set only the
// flags given are sent (the API keeps the others).
type cameraFlags struct {
	name, url, substream, username, pwFile string
	password, onDemand                     bool
}

func (f *cameraFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.name, "name", "", "name shown to users")
	cmd.Flags().StringVar(&f.url, "url", "", "main stream, rtsp:// or rtsps:// (credentials in it are moved to the write-only secret)")
	cmd.Flags().StringVar(&f.substream, "substream-url", "", "low-resolution stream for the grid (empty: none)")
	cmd.Flags().StringVar(&f.username, "username", "", "camera account (write-only)")
	cmd.Flags().StringVar(&f.pwFile, "password-file", "", "read the camera account's password from this file (write-only)")
	cmd.Flags().BoolVar(&f.password, "password", false, "read the camera account's password from standard input")
	cmd.Flags().BoolVar(&f.onDemand, "on-demand", true, "pull the stream only while someone watches")
}

func (f *cameraFlags) request(c *cli, cmd *cobra.Command, id string) (api.CameraRequest, error) {
	req := api.CameraRequest{ID: id}
	str := func(flag string, v string) *string {
		if !cmd.Flags().Changed(flag) {
			return nil
		}
		return &v
	}
	req.Name, req.URL, req.SubstreamURL, req.Username = str("name", f.name), str("url", f.url), str("substream-url", f.substream), str("username", f.username)
	if cmd.Flags().Changed("on-demand") {
		req.OnDemand = &f.onDemand
	}
	if f.pwFile != "" || f.password {
		pw, err := c.readSecret(f.pwFile, "camera password")
		if err != nil {
			return req, err
		}
		req.Password = &pw
	}
	return req, nil
}

func newCameras(c *cli) *cobra.Command {
	cmd := group("cameras", "Manage the cameras and get the URL to watch one",
		`The village's RTSP cameras: list them with their stream state, add, change or
remove one (admin), and print where to watch one (the web app page, and the
WHEP endpoint for WebRTC players). Camera credentials are write-only: the API
shows URLs redacted.`,
		`  loalang cameras list
  loalang cameras add cam-03 --name "Đình làng" --url rtsp://10.0.0.23/stream1 --username admin --password-file cam.txt
  loalang cameras set cam-03 --substream-url rtsp://10.0.0.23/stream2
  loalang cameras watch cam-03
  loalang cameras remove cam-03`)
	list := &cobra.Command{
		Use:     "list",
		Short:   "List the cameras you may see, with their stream state",
		Example: `  loalang cameras list`,
		Args:    cobra.NoArgs,
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			var cams []api.Camera
			if err := c.json(cmd.Context(), "GET", "/api/v1/cameras", nil, &cams); err != nil {
				return err
			}
			return c.emit(cams, func() {
				rows := [][]string{{"ID", "STATE", "CODEC", "SIZE", "FPS", "VIEWERS", "URL", "NAME"}}
				for _, v := range cams {
					size := "-"
					if v.Width > 0 {
						size = fmt.Sprintf("%dx%d", v.Width, v.Height)
					}
					rows = append(rows, []string{v.ID, v.State, orDash(v.Codec), size, fmt.Sprintf("%.0f", v.FPS), fmt.Sprint(v.Viewers), orDash(v.URL), v.Name})
				}
				printTable(c.out, rows)
			})
		}),
	}
	cmd.RunE = list.RunE

	var af cameraFlags
	add := &cobra.Command{
		Use:   "add ID --url rtsp://... [--name N]",
		Short: "Add a camera (admin)",
		Example: `  loalang cameras add cam-03 --name "Đình làng" --url rtsp://10.0.0.23/stream1
  loalang cameras add cam-04 --url rtsp://10.0.0.24/h264 --username admin --password < cam-pw.txt`,
		Args: cobra.ExactArgs(1),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			req, err := af.request(c, cmd, args[0])
			if err != nil {
				return err
			}
			var v api.Camera
			if err := c.json(cmd.Context(), "POST", "/api/v1/cameras", req, &v); err != nil {
				return fmt.Errorf("add camera %s: %w", args[0], err)
			}
			return c.emit(v, func() { fmt.Fprintf(c.out, "added %s (%s) %s\n", v.ID, v.Name, v.URL) })
		}),
	}
	af.register(add)
	add.MarkFlagRequired("url")

	var sf cameraFlags
	set := &cobra.Command{
		Use:   "set ID [--name N] [--url U] [--substream-url U] [--username U] [--password-file F] [--on-demand=false]",
		Short: "Change a camera (admin); fields not given keep their value",
		Example: `  loalang cameras set cam-03 --name "Cổng đình"
  loalang cameras set cam-03 --on-demand=false`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: c.completeFrom("/api/v1/cameras", "id"),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			req, err := sf.request(c, cmd, args[0])
			if err != nil {
				return err
			}
			if req == (api.CameraRequest{ID: args[0]}) {
				return usagef("cameras set: nothing to change")
			}
			var v api.Camera
			if err := c.json(cmd.Context(), "PUT", "/api/v1/cameras/"+url.PathEscape(args[0]), req, &v); err != nil {
				return fmt.Errorf("change camera %s: %w", args[0], err)
			}
			return c.emit(v, func() { fmt.Fprintf(c.out, "changed %s (%s) %s\n", v.ID, v.Name, v.URL) })
		}),
	}
	sf.register(set)

	remove := &cobra.Command{
		Use:               "remove ID",
		Aliases:           []string{"rm", "delete"},
		Short:             "Remove a camera (admin); its viewers are disconnected",
		Example:           `  loalang cameras remove cam-03`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: c.completeFrom("/api/v1/cameras", "id"),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			if err := c.json(cmd.Context(), "DELETE", "/api/v1/cameras/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return fmt.Errorf("remove camera %s: %w", args[0], err)
			}
			return c.emit(map[string]any{"id": args[0], "removed": true}, func() { fmt.Fprintf(c.out, "removed %s\n", args[0]) })
		}),
	}

	watch := &cobra.Command{
		Use:   "watch ID",
		Short: "Print where to watch a camera: the web app camera grid and the WHEP endpoint",
		Long: `Print where to watch a camera: the web app's camera grid (open it in a browser
and sign in) and the WHEP endpoint (RFC 9725 style WebRTC playback) for
players that speak it, such as GStreamer's whepsrc, with your token.`,
		Example: `  loalang cameras watch cam-01
  xdg-open "$(loalang --json cameras watch cam-01 | jq -r .page)"`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: c.completeFrom("/api/v1/cameras", "id"),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			var cams []api.Camera
			if err := c.json(cmd.Context(), "GET", "/api/v1/cameras", nil, &cams); err != nil {
				return err
			}
			var cam *api.Camera
			for i := range cams {
				if cams[i].ID == args[0] {
					cam = &cams[i]
				}
			}
			if cam == nil {
				return &apiError{Status: 404, Msg: fmt.Sprintf("no camera %q you may watch", args[0])}
			}
			base := strings.TrimRight(c.sess.Server, "/")
			v := map[string]any{
				"id":    cam.ID,
				"name":  cam.Name,
				"state": cam.State,
				"page":  base + "/app/cameras", // the grid; the app has no per-camera page
				"whep":  base + "/api/v1/cameras/" + url.PathEscape(cam.ID) + "/whep",
			}
			return c.emit(v, func() {
				fmt.Fprintf(c.out, "%s (%s), %s\n  web app: %s\n  WHEP:    %s (POST an SDP offer with Authorization: Bearer <token>)\n",
					cam.ID, cam.Name, cam.State, v["page"], v["whep"])
			})
		}),
	}
	cmd.AddCommand(list, add, set, remove, watch)
	return cmd
}
